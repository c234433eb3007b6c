"""Data layer: files to labelled xarray arrays, patches, preprocessing, phantoms, registry."""
