"""The ground floor: errors (every error class and its exit code), the one process runner,
options resolved in one order, locks, and atomic file operations. Imports nothing above."""
