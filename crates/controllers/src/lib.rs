//! Control loops over the API: node lifecycle, pod garbage collection.
