"""What a live session runs, without Qt: the stream controller (open, supersede, stop streams on worker
threads), the engine (windows → encoder → generator) and the headless frame writer. The desktop app and
the headless commands use the same objects."""
