"""Images, the synthetic data set, encoding views and the HDF5 token store (import the modules)."""
