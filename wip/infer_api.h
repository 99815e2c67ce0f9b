/* wip/infer_api.h: work in progress */
