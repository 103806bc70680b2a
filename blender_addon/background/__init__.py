"""Work off Blender's main thread: HTTP on worker threads, service jobs followed, answers applied by a timer tick."""
