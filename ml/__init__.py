"""Music generation library: notes, datasets, the Keras model, training, generation, evaluation, rendering.

Plain Python: nothing here imports Django or reads settings. Callers pass paths and config objects.
"""
