"""The contenders of ``make bench`` other than botstream, each run as its own process."""
