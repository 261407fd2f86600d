"""What the operator's handlers call: pure decisions, and the API calls that carry them out."""
