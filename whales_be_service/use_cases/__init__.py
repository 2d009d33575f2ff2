"""What the service does with a photo or a decision, one use case per module (predict, batch, enrol,
review, delete). Each is a small class whose collaborators (identifier, store, catalog, settings)
are given to its constructor; routes build none of them (`whales_be_service.deps` does) and keep to
HTTP: parse, call, answer."""
