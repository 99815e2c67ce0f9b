# llm.h: build the examples, tests and benchmarks. Every program is one .c file that
# includes llm.h; there is no library to build.
#
#   make           examples into build/
#   make test      all tests (plain, then the fast ones again under ASan+UBSan)
#   make bench     benchmarks (speed is measured here, never in tests)
#   make demo      train a small GPT-2 on Tiny Shakespeare, then generate
#   make data      fetch the data files into data/ (or copy them from ../shared/data)
#   make cuda      the CUDA companion, examples and tests built with nvcc

CC      ?= cc
CXX     ?= c++
PY      ?= /usr/bin/python3
OPT     ?= -O2
CFLAGS  ?= $(OPT) -g -std=c99 -Wall -Wextra -pthread
LDLIBS  ?= -lm -pthread
SAN     := -DLLM_TEST_SAN=1 -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
B       := build

EXAMPLES := $(patsubst examples/%.c,$(B)/%,$(wildcard examples/*.c))
TESTS    := $(patsubst tests/%.c,$(B)/tests/%,$(wildcard tests/test_*.c))
# Tests fast enough to repeat under the sanitizers (the model tests use small shapes).
SANTESTS := $(patsubst tests/%.c,$(B)/san/%,$(wildcard tests/test_*.c))
BENCHES  := $(patsubst bench/%.c,$(B)/bench/%,$(wildcard bench/bench_*.c))
# The CUDA tests on the CPU, through tests/cuda_emu.h (see the CUDA block below).
EMUTESTS    := $(B)/emu/tests/test_cuda $(B)/emu/tests/test_dist $(B)/emu/tests/test_cuda_emu $(B)/emu/tests/test_cuda_attn16
EMUSANTESTS := $(B)/emu/san/test_cuda $(B)/emu/san/test_dist $(B)/emu/san/test_cuda_emu $(B)/emu/san/test_cuda_attn16

.PHONY: all test test-plain test-san bench demo data clean cuda fixtures
all: $(EXAMPLES)

$(B)/%: examples/%.c llm.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -I. $< -o $@ $(LDLIBS)

$(B)/tests/%: tests/%.c llm.h tests/test.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -I. $< -o $@ $(LDLIBS)

$(B)/tests/test_cpp: tests/test_cpp.cpp llm.h tests/test.h
	@mkdir -p $(dir $@)
	$(CXX) $(OPT) -g -Wall -Wextra -pthread -I. $< -o $@ $(LDLIBS)

$(B)/san/%: tests/%.c llm.h tests/test.h
	@mkdir -p $(dir $@)
	$(CC) -std=c99 -Wall -Wextra -pthread $(SAN) -I. $< -o $@ $(LDLIBS)

$(B)/bench/%: bench/%.c llm.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -O3 -I. $< -o $@ $(LDLIBS) $(BENCH_LIBS)

# Reference files from PyTorch (Debian python3-torch). Without torch the tests that
# need them print SKIP.
fixtures:
	@mkdir -p $(B)/fixtures
	@if $(PY) -c 'import torch' 2>/dev/null; then \
	  for s in tests/ref_*.py; do [ -f "$$s" ] && [ "$$s" != tests/ref_common.py ] || continue; \
	    echo "== $$s"; $(PY) $$s $(B)/fixtures || exit 1; done; \
	else echo "SKIP fixtures: $(PY) has no torch (apt-get install python3-torch)"; fi

# llm.h as C11 with clang too (when clang is installed).
CLANG := $(shell command -v clang 2>/dev/null)
C11TEST := $(if $(CLANG),$(B)/tests/test_options_c11)
$(B)/tests/test_options_c11: tests/test_options.c llm.h tests/test.h
	@mkdir -p $(dir $@)
	$(CLANG) $(OPT) -g -std=c11 -Wall -Wextra -pthread -I. $< -o $@ $(LDLIBS)

EMUEXAMPLES := $(B)/emu/generate $(B)/emu/train_gpt2 $(B)/emu/chat $(B)/emu/bench_cuda

test: all fixtures $(TESTS) $(B)/tests/test_cpp $(C11TEST) $(EMUTESTS) $(EMUEXAMPLES) $(SANTESTS) $(EMUSANTESTS)
	@LLM_FIXTURES=$(B)/fixtures LLM_BUILD=$(B) tests/run.sh $(TESTS) $(B)/tests/test_cpp $(C11TEST) \
	  $(EMUTESTS) tests/test_cuda_examples.sh $(foreach t,$(SANTESTS),$(t)) $(EMUSANTESTS)

# OpenBLAS is used by the SGEMM benchmark only, as the yardstick (never by llm.h).
OPENBLAS_INC := $(wildcard /usr/include/x86_64-linux-gnu/openblas-pthread/cblas.h)
ifneq ($(OPENBLAS_INC),)
$(B)/bench/bench_gemm: BENCH_LIBS = -DLLM_BENCH_OPENBLAS -I/usr/include/x86_64-linux-gnu/openblas-pthread -lopenblas
endif

bench: $(BENCHES) all
	@for b in $(BENCHES); do echo "== $$b"; $$b || exit 1; done

# The README's first command: train a small GPT-2 on Tiny Shakespeare, then generate.
demo: all
	@scripts/demo.sh

# Data files into data/ (downloaded and checked, or copied from ../shared/data offline).
data:
	@scripts/data.sh

clean:
	rm -rf $(B)

# ---- CUDA: `make cuda` builds llm_cuda.cu with nvcc, then the CUDA test and the
# examples linked with it (compiled with -DLLM_CUDA=1, which enables `--device cuda`),
# and runs the test (it prints SKIP where there is no GPU).
NVCC      ?= $(shell command -v nvcc 2>/dev/null || echo /usr/local/cuda/bin/nvcc)
CUDA_HOME ?= $(patsubst %/bin/nvcc,%,$(NVCC))
CUDA_ARCH ?= -gencode arch=compute_75,code=sm_75 -gencode arch=compute_80,code=sm_80 \
             -gencode arch=compute_90,code=sm_90 -gencode arch=compute_90,code=compute_90
NVCCFLAGS ?= -O3 -std=c++17 $(CUDA_ARCH) -Xcompiler -Wall,-Wextra
CUDA_LIBS ?= -L$(CUDA_HOME)/lib64 -Wl,-rpath,$(CUDA_HOME)/lib64 -lcublas -lcublasLt -lcudart -lstdc++
CUDA_EXAMPLES := $(patsubst examples/%.c,$(B)/cuda/%,$(wildcard examples/*.c))
# NCCL, for multi-GPU data parallel (llm_options.dist_world), when nccl.h is found;
# `make cuda NCCL=` builds without it (dist_world >= 1 is then refused at create).
NCCL      ?= $(if $(wildcard $(CUDA_HOME)/include/nccl.h /usr/include/nccl.h),1)
NCCL_DEFS := $(if $(NCCL),-DLLM_CUDA_NCCL=1)
comma     := ,
NCCL_LIBS := $(if $(NCCL),$(foreach d,lib lib64,$(if $(wildcard $(CUDA_HOME)/$(d)/libnccl.so*), \
               -L$(CUDA_HOME)/$(d) -Wl$(comma)-rpath$(comma)$(CUDA_HOME)/$(d))) -lnccl)

$(B)/cuda/llm_cuda.o: llm_cuda.cu llm.h
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCCFLAGS) $(NCCL_DEFS) -I. -c $< -o $@

$(B)/cuda/tests/test_cuda: tests/test_cuda.c $(B)/cuda/llm_cuda.o llm.h tests/test.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -DLLM_CUDA=1 -I. $< $(B)/cuda/llm_cuda.o -o $@ $(NCCL_LIBS) $(CUDA_LIBS) $(LDLIBS)

$(B)/cuda/tests/test_dist: tests/test_dist.c $(B)/cuda/llm_cuda.o llm.h tests/test.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -DLLM_CUDA=1 -I. $< $(B)/cuda/llm_cuda.o -o $@ $(NCCL_LIBS) $(CUDA_LIBS) $(LDLIBS)

$(B)/cuda/tests/test_cuda_attn16: tests/test_cuda_attn16.c $(B)/cuda/llm_cuda.o llm.h tests/test.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -DLLM_CUDA=1 -I. $< $(B)/cuda/llm_cuda.o -o $@ $(NCCL_LIBS) $(CUDA_LIBS) $(LDLIBS)

$(B)/cuda/%: examples/%.c $(B)/cuda/llm_cuda.o llm.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -DLLM_CUDA=1 -I. $< $(B)/cuda/llm_cuda.o -o $@ $(NCCL_LIBS) $(CUDA_LIBS) $(LDLIBS)

# The GPU benchmark (GPT-2 124M training step and MFU, batch-1 inference): `make cuda`
# builds it, `make bench-cuda` runs it (SKIP without a GPU).
$(B)/cuda/bench_cuda: bench/bench_cuda.c bench/bench.h $(B)/cuda/llm_cuda.o llm.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -O3 -DLLM_CUDA=1 -I. $< $(B)/cuda/llm_cuda.o -o $@ \
	  $(NCCL_LIBS) $(CUDA_LIBS) $(LDLIBS)

.PHONY: bench-cuda
cuda: $(B)/cuda/bench_cuda
bench-cuda: $(B)/cuda/bench_cuda
	$(B)/cuda/bench_cuda

cuda: $(B)/cuda/llm_cuda.o $(B)/cuda/tests/test_cuda $(B)/cuda/tests/test_dist $(B)/cuda/tests/test_cuda_attn16 $(CUDA_EXAMPLES)
	@tests/run.sh $(B)/cuda/tests/test_cuda $(B)/cuda/tests/test_dist $(B)/cuda/tests/test_cuda_attn16

# ---- CUDA without a GPU: llm_cuda.cu compiled by the host C++ compiler against
# tests/cuda_emu.h, which runs its kernels on the CPU (each CUDA thread a fiber) and
# emulates cuBLAS, cuBLASLt and NCCL (ranks as host threads). `make test` runs the CUDA tests linked with
# it (they print EMULATED), the emulator's own test, and the same under ASan+UBSan.
EMUFLAGS    := -std=c++17 -Wall -Wextra -pthread -include tests/cuda_emu.h -include tests/cuda_emu_wmma.h -DLLM_CUDA_EMU=1 -I.

$(B)/emu/llm_cuda.o: llm_cuda.cu tests/cuda_emu.h tests/cuda_emu_wmma.h llm.h
	@mkdir -p $(dir $@)
	$(CXX) $(OPT) -g $(EMUFLAGS) -x c++ -c $< -o $@
$(B)/emu/tests/test_cuda_emu: tests/test_cuda_emu.cpp tests/cuda_emu.h tests/test.h
	@mkdir -p $(dir $@)
	$(CXX) $(OPT) -g $(EMUFLAGS) $< -o $@ $(LDLIBS)
$(B)/emu/tests/%: tests/%.c $(B)/emu/llm_cuda.o llm.h tests/test.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -DLLM_CUDA=1 -I. -c $< -o $@.o
	$(CXX) $@.o $(B)/emu/llm_cuda.o -o $@ $(LDLIBS)

# the examples, as users run them with --device cuda, and bench_cuda --tiny
# (tests/test_cuda_examples.sh)
$(B)/emu/%: examples/%.c $(B)/emu/llm_cuda.o llm.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -DLLM_CUDA=1 -I. -c $< -o $@.o
	$(CXX) $@.o $(B)/emu/llm_cuda.o -o $@ $(LDLIBS)
$(B)/emu/bench_cuda: bench/bench_cuda.c bench/bench.h $(B)/emu/llm_cuda.o llm.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -DLLM_CUDA=1 -I. -c $< -o $@.o
	$(CXX) $@.o $(B)/emu/llm_cuda.o -o $@ $(LDLIBS)

$(B)/emu/san/llm_cuda.o: llm_cuda.cu tests/cuda_emu.h tests/cuda_emu_wmma.h llm.h
	@mkdir -p $(dir $@)
	$(CXX) $(SAN) $(EMUFLAGS) -x c++ -c $< -o $@
$(B)/emu/san/test_cuda_emu: tests/test_cuda_emu.cpp tests/cuda_emu.h tests/test.h
	@mkdir -p $(dir $@)
	$(CXX) $(SAN) $(EMUFLAGS) $< -o $@ $(LDLIBS)
$(B)/emu/san/%: tests/%.c $(B)/emu/san/llm_cuda.o llm.h tests/test.h
	@mkdir -p $(dir $@)
	$(CC) -std=c99 -Wall -Wextra -pthread $(SAN) -DLLM_CUDA=1 -I. -c $< -o $@.o
	$(CXX) $(SAN) $@.o $(B)/emu/san/llm_cuda.o -o $@ $(LDLIBS)

# ---- ARM64 under qemu: `make test-arm` cross-builds every test with aarch64-linux-gnu-gcc
# and runs it under qemu-aarch64 (Debian: gcc-aarch64-linux-gnu libc6-dev-arm64-cross
# qemu-user), once at the best SIMD level there (NEON) and once with LLM_SIMD=scalar.
# Each run goes through a two-line wrapper script (build/arm/{neon,scalar}/test_x), so
# tests/run.sh adds them up as usual. Built with -DLLM_TEST_SAN=1 like the sanitizer
# copies: the heaviest cases are left out (qemu runs ~50x slower), every kernel and model
# test still runs at smaller shapes.
ARM_CC    ?= aarch64-linux-gnu-gcc
QEMU_ARM  ?= qemu-aarch64 -L /usr/aarch64-linux-gnu
ARM_TESTS := $(patsubst tests/%.c,$(B)/arm/tests/%,$(wildcard tests/test_*.c))
ARM_RUNS  := $(patsubst $(B)/arm/tests/%,$(B)/arm/neon/%,$(ARM_TESTS)) \
             $(patsubst $(B)/arm/tests/%,$(B)/arm/scalar/%,$(ARM_TESTS))
.PHONY: test-arm
$(B)/arm/tests/%: tests/%.c llm.h tests/test.h
	@mkdir -p $(dir $@)
	$(ARM_CC) $(OPT) -g -std=c99 -Wall -Wextra -pthread -DLLM_TEST_SAN=1 -I. $< -o $@ $(LDLIBS)
$(B)/arm/neon/%: $(B)/arm/tests/%
	@mkdir -p $(dir $@)
	@printf '#!/bin/sh\nexec $(QEMU_ARM) %s "$$@"\n' $< > $@ && chmod +x $@
$(B)/arm/scalar/%: $(B)/arm/tests/%
	@mkdir -p $(dir $@)
	@printf '#!/bin/sh\nLLM_SIMD=scalar exec $(QEMU_ARM) %s "$$@"\n' $< > $@ && chmod +x $@
test-arm: all fixtures $(ARM_RUNS)
	@LLM_FIXTURES=$(B)/fixtures LLM_BUILD=$(B) tests/run.sh $(ARM_RUNS)
