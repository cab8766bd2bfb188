"""Air that is not lung, taken out of the lung labels: the trachea and sub-diaphragmatic gas by where they are
(extrapulmonary_air), the trachea the network ties to an apex by the air above it (airway_column)."""
