"""What the components share: helpers that declare resources. They import no component, and no component imports
another: shared facts live in llm_mesh/plan/topology.py."""
