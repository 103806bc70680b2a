"""bpy-side data: meshes <-> numpy, neural objects in the scene, where new objects go."""
