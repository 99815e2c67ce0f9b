/* wip/core_impl.h: work in progress, inlined into llm.h when done. */
