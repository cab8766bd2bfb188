"""The ``neonatal-lung-seg`` console command: one subcommand per pipeline step, each parsing its arguments and
calling one library function. The top of the import graph: nothing in the library imports it.
"""
