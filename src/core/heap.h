#ifndef SL_CORE_HEAP_H
#define SL_CORE_HEAP_H

/* Process-wide allocator settings, applied once at start. */
void sl_heap_tune(void);

#endif
