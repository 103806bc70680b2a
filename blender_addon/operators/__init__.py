"""The add-on's operators (the buttons): read bpy on the main thread, hand the service calls to :mod:`..background`."""
