"""The valid values of the library's string options, defined once, without TensorFlow.

The modules that implement an option import its tuple from here, and so does the
experiment app's config (`keras_npset.experiments.config`), which checks a run's
settings before anything imports TensorFlow. (`keras_npset.topology.CRITERIA` needs
no such place: `topology.py` is NumPy only.)
"""

# `SparseDense(kernel_impl=...)`: the sparse x dense products of `keras_npset.kernels`.
KERNEL_IMPLEMENTATIONS = ("auto", "gather", "csr", "sparse_dense_matmul")
# Those with XLA kernels, so usable under `jit_compile=True` ("auto" picks "gather" there).
XLA_KERNEL_IMPLEMENTATIONS = ("auto", "gather")

# `SparseDense(kernel_initializer=...)`: variance-scaling schemes (scale, fan mode,
# distribution) computed with the *sparse* fans: a column has on average nnz / units
# inputs, a row nnz / input_dim outputs. Plus "set_normal", N(0, 1) / 10 as the
# original SET code.
VARIANCE_SCALING_INITIALIZERS = {
    "glorot_uniform": (1.0, "fan_avg", "uniform"),
    "glorot_normal": (1.0, "fan_avg", "normal"),
    "he_uniform": (2.0, "fan_in", "uniform"),
    "he_normal": (2.0, "fan_in", "normal"),
    "lecun_uniform": (1.0, "fan_in", "uniform"),
    "lecun_normal": (1.0, "fan_in", "normal"),
}
KERNEL_INITIALIZERS = (*VARIANCE_SCALING_INITIALIZERS, "set_normal")

# `feature_importance(criterion=...)`, `InputPruning(criterion=...)`: how input features are scored.
IMPORTANCE_CRITERIA = ("path", "strength", "degree")

# `SETEvolution(init=...)`: the initial value of regrown connections.
NEW_VALUE_INITS = ("normal", "zeros")
