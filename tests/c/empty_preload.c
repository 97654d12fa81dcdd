/* The floor for any preloaded library: one exported function, no constructor. The overhead
 * benchmark loads it beside libreuse.so to show what preloading alone costs an exec. */
int reuse_bench_empty(void) { return 0; }
