"""Results API: classification results, readable only by the uploader."""
