"""The model folder contract: reading and validating ``model.json``, verified weights, building the network by
name, the int8 network and the traced-network cache, and the registry of installed models.

Nothing here runs a network on data; the inference package does that. May import ``errors`` and ``geometry``
only, so the schema and the registry can be used by the Slicer module without torch.
"""
