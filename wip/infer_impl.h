/* wip/infer_impl.h: work in progress */
