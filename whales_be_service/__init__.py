"""EcoMarineAI HTTP service: a thin FastAPI adapter over `whales_identify`."""
