"""Operating Stateful ML: the local stack (`make up`/`down`), deploying (`make deploy`) and
the relay that turns an `image.published` event into a retrain run on the new image."""
