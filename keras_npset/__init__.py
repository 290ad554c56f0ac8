"""keras-npset: truly sparse Keras layers with SET and NPSET."""
