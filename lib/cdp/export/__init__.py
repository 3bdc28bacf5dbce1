"""Export of audience members to object storage; the only package that talks to it (boto3)."""
