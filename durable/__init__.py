"""Durable entities: one per speaker (segmentation) and one per room (who is here, in which language)."""
