"""Every file contact: model files, NONMEM-style datasets, simulation output."""
