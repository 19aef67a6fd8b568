"""Image generator backends; each module holds the loader a ``BACKENDS`` registry entry names
(``augment.core.registry``), and a loaded backend renders layouts into images."""
