"""HTTP handlers. They never import the sources: values reach them through the hub and the store."""
