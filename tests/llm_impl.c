/* tests/llm_impl.c: the implementation of llm.h compiled once, for the test programs that
 * use only the public API (the Makefile links it; those that test private llm__ functions
 * define LLM_IMPLEMENTATION themselves). */
#define LLM_IMPLEMENTATION
#include "llm.h"
