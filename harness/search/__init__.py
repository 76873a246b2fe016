"""Looking for findings: campaigns, minimizing, differential runs, the matrix, scale runs."""
