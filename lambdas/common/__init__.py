"""Code shared by every mlbase Lambda, shipped as one layer (stdlib, boto3 and Powertools only)."""
