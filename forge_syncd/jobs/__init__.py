"""One job of one container: what it works with and reports, how it is recorded (lock, run
record, log, failure kinds), and its progress."""
