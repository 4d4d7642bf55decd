"""Code shared by every mlbase Lambda, shipped as one layer with slack_sdk (beside stdlib, boto3 and Powertools)."""
