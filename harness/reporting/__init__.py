"""What a user keeps: findings on disk, standalone reproducers, memory reports."""
