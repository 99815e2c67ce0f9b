/* wip/tokenizer_api.h: work in progress, inlined into llm.h when done. */
