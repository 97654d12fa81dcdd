/* The floor for any preloaded library: one exported function, no constructor. The overhead
 * benchmark builds it twice, with the compiler's defaults and linked like libreuse.so, and
 * loads both beside libreuse.so to show what preloading alone costs an exec. */
int reuse_bench_empty(void) { return 0; }
