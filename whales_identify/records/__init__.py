"""What the library stores and exchanges, without storing it: the `Store` protocol
(`store.py`) that integrations/ implement, sightings (`sighting.py`), the review queue's
filters (`review_queue.py`), catalog CSV import/export (`catalog_csv.py`) and the public
view of positions (`location_privacy.py`)."""
