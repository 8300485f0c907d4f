"""The job record, its state machine, and the job stores."""
