"""Forward passes of the supported architectures in numpy: hyper-parameters, operations, models, MTP heads."""
