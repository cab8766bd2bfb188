"""The *Improve model* section: the training folder's summary, the improve run in its own process
(``NeonatalLungSegLib.worker.improve_process``), the before/after table and switching models. Imports the
package's top-level helpers and the engine's registry.
"""
