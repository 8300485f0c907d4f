"""The worker: claims jobs, runs the engine, stores outputs, finishes; and the sweeper."""
