# llm.h: build the examples, tests and benchmarks. Every example is one .c file that
# includes llm.h; there is no library to build.
#
#   make            examples into build/
#   make test       the test suite, built and run in parallel (the run: about 1 min on 2 cores):
#                   every feature, PyTorch's answers from tests/fixtures (no torch needed)
#   make check      test, plus the ASan+UBSan builds of every test, the CUDA emulator
#                   suites, ThreadSanitizer, GPT-2 124M (test-big) and, when
#                   /usr/bin/python3 has torch, the fixtures regenerated and compared
#   make test-big   GPT-2 124M's full shape against PyTorch
#   make fuzz       every libFuzzer target for FUZZ_SECONDS each (clang)
#   make fixtures   regenerate the PyTorch references and compare them with the
#                   committed ones (fixtures-update replaces them)
#   make valgrind   memcheck on the examples' typical runs
#   make tsan       the thread pool and two models in two threads under ThreadSanitizer
#   make bench      benchmarks (speed is measured here, never in tests)
#   make demo       train a tokenizer and a small model on Tiny Shakespeare, then generate
#   make demo-gpt2  the same with GPT-2's 50,257-token vocabulary
#   make data       fetch the data files into data/ (or copy them from ../shared/data)
#   make gpt2       the pretrained GPT-2 124M into data/gpt2-124M/ (MODEL=gpt2-medium: 355M)
#   make cuda       the CUDA companion, examples and tests built with nvcc
#   make test-warnings, test-install, test-windows, test-arm   portability (.ci/run runs them)
#
# A test is a program that prints "name: N passed, N failed, N skipped" last;
# tests/run.sh runs a list of them (in parallel with -j) and ends with the total. To
# run the suite elsewhere (another compiler, an emulator): build $(TEST_BINS) with B= and
# CC= set, and run tests/run.sh with LLM_TEST_WRAPPER (e.g. "qemu-aarch64 -L /usr/aarch64-
# linux-gnu" or "wine"); the fixtures and fuzz corpora are found through LLM_FIXTURES and
# LLM_FUZZ_DIR, which $(TEST_ENV) sets to absolute paths.

CC      ?= cc
CXX     ?= c++
PY      ?= /usr/bin/python3
OPT     ?= -O2
CFLAGS  ?= $(OPT) -g -std=c99 -Wall -Wextra -pthread
LDLIBS  ?= -lm -pthread
SAN     := -DLLM_TEST_SAN=1 -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
TSAN    := -O1 -g -fsanitize=thread
B       := build
NPROC   := $(shell nproc 2>/dev/null || getconf _NPROCESSORS_ONLN 2>/dev/null || echo 2)

EXAMPLES := $(patsubst examples/%.c,$(B)/%,$(wildcard examples/*.c))
BENCHES  := $(patsubst bench/%.c,$(B)/bench/%,$(wildcard bench/bench_*.c))
# The CUDA tests on the CPU, through tests/cuda_emu.h (see the CUDA block below).
EMUTESTS    := $(B)/emu/tests/test_cuda $(B)/emu/tests/test_dist $(B)/emu/tests/test_cuda_emu $(B)/emu/tests/test_cuda_attn16 \
               $(B)/emu/tests/test_lora $(B)/emu/tests/test_cuda_scaler $(B)/emu/tests/test_cuda_act16
EMUSANTESTS := $(B)/emu/san/test_cuda $(B)/emu/san/test_dist $(B)/emu/san/test_cuda_emu $(B)/emu/san/test_cuda_attn16 \
               $(B)/emu/san/test_cuda_scaler $(B)/emu/san/test_cuda_act16

EMUEXAMPLES := $(B)/emu/generate $(B)/emu/train_gpt2 $(B)/emu/chat $(B)/emu/bench_cuda

# ---- the test programs ---------------------------------------------------------------
# TEST_NAMES: tests/test_*.c, plus the replays of the fuzz corpora (tests/fuzz_*.c built
# with -DFUZZ_REPLAY, see tests/fuzz.h). Those that test private llm__ functions define
# LLM_IMPLEMENTATION themselves (TEST_SELF); the others link the implementation compiled
# once, $(B)/llm.o (from tests/llm_impl.c).
TEST_NAMES := $(patsubst tests/%.c,%,$(wildcard tests/test_*.c)) \
              $(filter-out fuzz_seeds,$(patsubst tests/%.c,%,$(wildcard tests/fuzz_*.c)))
TEST_SELF  := $(patsubst tests/%.c,%,$(shell grep -l '^\#define LLM_IMPLEMENTATION' tests/test_*.c tests/fuzz_*.c))
TEST_HDRS  := tests/test.h tests/ref.h tests/fuzz.h
TESTS      := $(addprefix $(B)/tests/,$(TEST_NAMES))
# llm.h as C++, and as C11 with clang when it is installed.
CLANG      := $(shell command -v clang 2>/dev/null)
TEST_BINS  := $(TESTS) $(B)/tests/test_cpp $(if $(CLANG),$(B)/tests/test_options_c11)
# What `make test` runs: the programs, then the examples as users run them.
TEST_RUN   := $(TEST_BINS) tests/test_examples.sh tests/test_colab.py tests/test_data_sh.sh tests/test_finetune.sh
TEST_ENV    = LLM_FIXTURES=$(CURDIR)/tests/fixtures LLM_FUZZ_DIR=$(CURDIR)/tests/fuzz LLM_BUILD=$(B)

.PHONY: all test test-build check check-build test-big fixtures fixtures-update fuzz fuzz-build \
        fuzz-seeds valgrind tsan bench demo demo-gpt2 data gpt2 clean cuda
all: $(EXAMPLES)

$(B)/%: examples/%.c llm.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -I. $< -o $@ $(LDLIBS)
# the loss plot (--plot) of the trainer, and its test
$(B)/train_gpt2 $(B)/cuda/train_gpt2 $(B)/emu/train_gpt2 $(B)/finetune $(B)/tests/test_plot $(B)/san/test_plot: examples/plot.h

$(B)/llm.o: tests/llm_impl.c llm.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -I. -c $< -o $@

$(filter $(addprefix $(B)/tests/,$(TEST_SELF)),$(TESTS)): $(B)/tests/%: tests/%.c llm.h $(TEST_HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -DFUZZ_REPLAY -I. $< -o $@ $(LDLIBS)
$(filter-out $(addprefix $(B)/tests/,$(TEST_SELF)),$(TESTS)): $(B)/tests/%: tests/%.c $(B)/llm.o llm.h $(TEST_HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -DFUZZ_REPLAY -I. $< $(B)/llm.o -o $@ $(LDLIBS)

$(B)/tests/test_cpp: tests/test_cpp.cpp llm.h tests/test.h
	@mkdir -p $(dir $@)
	$(CXX) $(OPT) -g -Wall -Wextra -pthread -I. $< -o $@ $(LDLIBS)

$(B)/tests/test_options_c11: tests/test_options.c llm.h tests/test.h
	@mkdir -p $(dir $@)
	$(CLANG) $(OPT) -g -std=c11 -Wall -Wextra -pthread -I. $< -o $@ $(LDLIBS)

# The same programs under ASan+UBSan (make check), with the implementation in $(B)/san/llm.o;
# the CUDA tests' sanitizer copies are the emulated ones (EMUSANTESTS).
SANTESTS := $(addprefix $(B)/san/,$(filter-out test_cuda test_cuda_attn16 test_dist,$(TEST_NAMES)))
$(B)/san/llm.o: tests/llm_impl.c llm.h
	@mkdir -p $(dir $@)
	$(CC) -std=c99 -Wall -Wextra -pthread $(SAN) -I. -c $< -o $@
$(filter $(addprefix $(B)/san/,$(TEST_SELF)),$(SANTESTS)): $(B)/san/%: tests/%.c llm.h $(TEST_HDRS)
	@mkdir -p $(dir $@)
	$(CC) -std=c99 -Wall -Wextra -pthread $(SAN) -DFUZZ_REPLAY -I. $< -o $@ $(LDLIBS)
$(filter-out $(addprefix $(B)/san/,$(TEST_SELF)),$(SANTESTS)): $(B)/san/%: tests/%.c $(B)/san/llm.o llm.h $(TEST_HDRS)
	@mkdir -p $(dir $@)
	$(CC) -std=c99 -Wall -Wextra -pthread $(SAN) -DFUZZ_REPLAY -I. $< $(B)/san/llm.o -o $@ $(LDLIBS)

# ThreadSanitizer: the thread pool, and two models trained in two threads at once.
TSANTESTS := $(B)/tsan/test_threads
$(B)/tsan/%: tests/%.c tests/llm_impl.c llm.h $(TEST_HDRS)
	@mkdir -p $(dir $@)
	$(CC) -std=c99 -Wall -Wextra -pthread $(TSAN) -DLLM_TEST_TSAN=1 -I. $< tests/llm_impl.c -o $@ $(LDLIBS)

# GPT-2 124M against PyTorch (tests/big_gpt2.c; make test-big and make check).
$(B)/tests/big_gpt2: tests/big_gpt2.c $(B)/llm.o llm.h $(TEST_HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -I. $< $(B)/llm.o -o $@ $(LDLIBS)

# ---- fuzzing -------------------------------------------------------------------------------
# libFuzzer targets (clang): one binary per input surface, each started from its seed
# corpus tests/fuzz/<corpus>/ (`make fuzz-seeds` rewrites the seeds) and run for
# FUZZ_SECONDS; new inputs go to $(B)/fuzz/corpus/<name>/, crashes to $(B)/fuzz/.
FUZZ_SECONDS ?= 60
FUZZ_FLAGS   := -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -I.
# name:source:mode:corpus:max_len
FUZZERS := safetensors:fuzz_model:0:safetensors:16384 llmc:fuzz_model:1:llmc:16384 \
           llama2c:fuzz_model:2:llama2c:16384 ckpt:fuzz_model:3:ckpt:65536 \
           llama_tokenizer:fuzz_llama_tokenizer:0:llama_tokenizer:8192 gpt2_tokenizer:fuzz_tokenizer:0:tokenizer:4096 \
           dataset:fuzz_dataset:0:dataset:4096 json:fuzz_json:0:json:4096 gguf:fuzz_gguf:0:gguf:65536
fz = $(word $(2),$(subst :, ,$(1)))
FUZZ_BINS := $(foreach f,$(FUZZERS),$(B)/fuzz/fuzz_$(call fz,$(f),1))
define FUZZ_RULE
$(B)/fuzz/fuzz_$(1): tests/$(2).c tests/llm_impl.c llm.h $(TEST_HDRS)
	@mkdir -p $$(dir $$@)
	$$(CLANG) $$(FUZZ_FLAGS) -DFUZZ_MODE=$(3) $$< $(if $(filter $(2),$(TEST_SELF)),,tests/llm_impl.c) -o $$@ $$(LDLIBS)
endef
$(foreach f,$(FUZZERS),$(eval $(call FUZZ_RULE,$(call fz,$(f),1),$(call fz,$(f),2),$(call fz,$(f),3))))
fuzz-build: $(FUZZ_BINS)
fuzz:
	@[ -n "$(CLANG)" ] || { echo "make fuzz: needs clang with libFuzzer"; exit 1; }
	@$(MAKE) --no-print-directory -j$(NPROC) fuzz-build
	@$(TEST_ENV) FUZZERS="$(FUZZERS)" FUZZ_SECONDS=$(FUZZ_SECONDS) tests/run.sh tests/test_fuzz.sh
fuzz-seeds: $(B)/tests/fuzz_seeds
	$(B)/tests/fuzz_seeds tests/fuzz
$(B)/tests/fuzz_seeds: tests/fuzz_seeds.c $(B)/llm.o llm.h $(TEST_HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -I. $< $(B)/llm.o -o $@ $(LDLIBS)

# ---- running them ----------------------------------------------------------------------
# The builds run in a sub-make with one job per core; tests/run.sh then runs the programs
# in parallel and prints each one's output whole, in the order given, then the total.
test:
	@$(MAKE) --no-print-directory -j$(NPROC) test-build
	@$(TEST_ENV) tests/run.sh -j $(NPROC) $(TEST_RUN)
test-build: all $(TEST_BINS)

# CHECK_FUZZ=1 adds every fuzz target for FUZZ_SECONDS, CHECK_VALGRIND=1 the valgrind run
# (.ci/run sets both), so that one total line covers everything.
CHECK_RUN = $(SANTESTS) $(EMUTESTS) tests/test_cuda_examples.sh $(EMUSANTESTS) $(TSANTESTS) $(B)/tests/big_gpt2 \
            tests/test_fixtures.sh $(if $(CHECK_VALGRIND),tests/test_valgrind.sh) $(if $(CHECK_FUZZ),tests/test_fuzz.sh)
check:
	@$(MAKE) --no-print-directory -j$(NPROC) test-build check-build
	@$(TEST_ENV) PY=$(PY) FUZZERS="$(FUZZERS)" FUZZ_SECONDS=$(FUZZ_SECONDS) tests/run.sh -j $(NPROC) $(TEST_RUN) $(CHECK_RUN)
check-build: $(SANTESTS) $(EMUTESTS) $(EMUEXAMPLES) $(EMUSANTESTS) $(TSANTESTS) $(B)/tests/big_gpt2 \
             $(if $(CHECK_FUZZ),$(if $(CLANG),$(FUZZ_BINS)))

test-big:
	@$(MAKE) --no-print-directory -j$(NPROC) $(B)/tests/big_gpt2
	@$(TEST_ENV) tests/run.sh $(B)/tests/big_gpt2

tsan:
	@$(MAKE) --no-print-directory -j$(NPROC) $(TSANTESTS)
	@$(TEST_ENV) tests/run.sh $(TSANTESTS)

# ---- PyTorch references ----------------------------------------------------------------
# tests/ref_*.py compute PyTorch's answers (Debian python3-torch) into $(B)/fixtures;
# tests/test_fixtures.sh then compares them with the committed tests/fixtures (the test
# that the repository's truth is PyTorch's now). fixtures-update copies them over.
fixtures:
	@$(TEST_ENV) PY=$(PY) tests/run.sh tests/test_fixtures.sh
fixtures-update:
	@$(PY) -c 'import torch' || { echo "fixtures-update: $(PY) has no torch (apt-get install python3-torch)"; exit 1; }
	@rm -rf $(B)/fixtures && mkdir -p $(B)/fixtures
	@for s in tests/ref_gpt2.py tests/ref_llama.py tests/ref_generate.py tests/ref_lora.py; do echo "== $$s"; $(PY) $$s $(B)/fixtures || exit 1; done
	rm -rf tests/fixtures && cp -r $(B)/fixtures tests/fixtures

# ---- valgrind -------------------------------------------------------------------------------
# memcheck on the examples' typical runs (tests/test_valgrind.sh: tests/test_examples.sh with
# every example under valgrind; any error or leak fails).
valgrind: all
	@$(TEST_ENV) tests/run.sh tests/test_valgrind.sh

# OpenBLAS is used by the SGEMM benchmark only, as the yardstick (never by llm.h).
OPENBLAS_INC := $(wildcard /usr/include/x86_64-linux-gnu/openblas-pthread/cblas.h)
ifneq ($(OPENBLAS_INC),)
$(B)/bench/bench_gemm: BENCH_LIBS = -DLLM_BENCH_OPENBLAS -I/usr/include/x86_64-linux-gnu/openblas-pthread -lopenblas
endif

$(B)/bench/%: bench/%.c llm.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -O3 -I. $< -o $@ $(LDLIBS) $(BENCH_LIBS)

bench: $(BENCHES) all
	@for b in $(BENCHES); do echo "== $$b"; $$b || exit 1; done

# The README's first command: train a tokenizer and a small model on Tiny Shakespeare,
# then generate. demo-gpt2: the earlier demo, with GPT-2's vocabulary.
# (the scripts build what they need, in parallel)
demo:
	@scripts/demo.sh
demo-gpt2:
	@scripts/demo_gpt2.sh

# Data files into data/ (downloaded and checked, or copied from ../shared/data offline).
data:
	@scripts/data.sh

# HuggingFace's GPT-2 (model.safetensors, config.json and its tokenizer), SHA-256 checked:
# `make gpt2` -> data/gpt2-124M/, `make gpt2 MODEL=gpt2-medium` -> data/gpt2-355M/.
MODEL ?= gpt2
gpt2:
	@scripts/data.sh gpt2 $(MODEL)

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

$(B)/cuda/tests/test_cuda_scaler: tests/test_cuda_scaler.c $(B)/cuda/llm_cuda.o llm.h tests/test.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -DLLM_CUDA=1 -I. $< $(B)/cuda/llm_cuda.o -o $@ $(NCCL_LIBS) $(CUDA_LIBS) $(LDLIBS)

$(B)/cuda/tests/test_cuda_act16: tests/test_cuda_act16.c $(B)/cuda/llm_cuda.o llm.h tests/test.h
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

cuda: $(B)/cuda/llm_cuda.o $(B)/cuda/tests/test_cuda $(B)/cuda/tests/test_dist $(B)/cuda/tests/test_cuda_attn16 \
      $(B)/cuda/tests/test_cuda_scaler $(B)/cuda/tests/test_cuda_act16 $(CUDA_EXAMPLES)
	@tests/run.sh $(B)/cuda/tests/test_cuda $(B)/cuda/tests/test_dist $(B)/cuda/tests/test_cuda_attn16 \
	  $(B)/cuda/tests/test_cuda_scaler $(B)/cuda/tests/test_cuda_act16

# ---- CUDA without a GPU: llm_cuda.cu compiled by the host C++ compiler against
# tests/cuda_emu.h, which runs its kernels on the CPU (each CUDA thread a fiber) and
# emulates cuBLAS, cuBLASLt and NCCL (ranks as host threads). `make check` runs the CUDA tests linked with
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
# test_cuda builds models from the committed PyTorch fixtures through tests/ref.h.
$(B)/cuda/tests/test_cuda $(B)/emu/tests/test_cuda $(B)/emu/san/test_cuda: tests/ref.h

# ---- ARM64 under qemu: `make test-arm` cross-builds every test with aarch64-linux-gnu-gcc
# and runs it under qemu-aarch64 (Debian: gcc-aarch64-linux-gnu libc6-dev-arm64-cross
# qemu-user), once at the best SIMD level there (NEON, and BF16: qemu's -cpu max has
# ARMv8.6) and once with LLM_SIMD=scalar; the bf16 GEMM test once more on a CPU without
# BF16 (cortex-a72), where the same binary must run in fp32.
# Each run goes through a two-line wrapper script (build/arm/{neon,scalar,nobf16}/test_x), so
# tests/run.sh adds them up as usual. Built with -DLLM_TEST_SAN=1 like the sanitizer
# copies: the heaviest cases are left out (qemu runs ~50x slower), every kernel and model
# test still runs at smaller shapes.
ARM_CC    ?= aarch64-linux-gnu-gcc
QEMU_ARM  ?= qemu-aarch64 -L /usr/aarch64-linux-gnu
ARM_TESTS := $(patsubst tests/%.c,$(B)/arm/tests/%,$(wildcard tests/test_*.c))
ARM_RUNS  := $(patsubst $(B)/arm/tests/%,$(B)/arm/neon/%,$(ARM_TESTS)) \
             $(patsubst $(B)/arm/tests/%,$(B)/arm/scalar/%,$(ARM_TESTS)) $(B)/arm/nobf16/test_gemm_bf16
.PHONY: test-arm
.PRECIOUS: $(B)/arm/tests/%   # kept for the next run (make deletes a chain's intermediates)
$(B)/arm/llm.o: tests/llm_impl.c llm.h
	@mkdir -p $(dir $@)
	$(ARM_CC) $(OPT) -g -std=c99 -Wall -Wextra -pthread -I. -c $< -o $@
$(B)/arm/tests/%: tests/%.c $(B)/arm/llm.o llm.h $(TEST_HDRS)
	@mkdir -p $(dir $@)
	$(ARM_CC) $(OPT) -g -std=c99 -Wall -Wextra -pthread -DLLM_TEST_SAN=1 -I. $< \
	  $(if $(filter $*,$(TEST_SELF)),,$(B)/arm/llm.o) -o $@ $(LDLIBS)
$(B)/arm/neon/%: $(B)/arm/tests/%
	@mkdir -p $(dir $@)
	@printf '#!/bin/sh\nexec $(QEMU_ARM) -cpu max %s "$$@"\n' $< > $@ && chmod +x $@
$(B)/arm/nobf16/%: $(B)/arm/tests/%
	@mkdir -p $(dir $@)
	@printf '#!/bin/sh\nexec $(QEMU_ARM) -cpu cortex-a72 %s "$$@"\n' $< > $@ && chmod +x $@
$(B)/arm/scalar/%: $(B)/arm/tests/%
	@mkdir -p $(dir $@)
	@printf '#!/bin/sh\nLLM_SIMD=scalar exec $(QEMU_ARM) -cpu max %s "$$@"\n' $< > $@ && chmod +x $@
test-arm: all $(ARM_RUNS)
	@$(TEST_ENV) tests/run.sh $(ARM_RUNS)

# ---- Windows, install, C++ (platform portability) ------------------------------------------
# `make test-windows`: the plain test suite cross-built with MinGW-w64 and run under wine
# (Debian: gcc-mingw-w64-x86-64 g++-mingw-w64-x86-64 wine wine64). Beside each test .exe a
# small script runs it under wine, so tests/run.sh takes them as it takes the native tests.
# The examples are cross-built too. Then tests/test_windows_bits.sh: test_platform's training
# losses, printed with %a on each SIMD level, and generate's text must be the same bits on
# Windows as on Linux.
WINCC    ?= x86_64-w64-mingw32-gcc
WINCXX   ?= x86_64-w64-mingw32-g++
WINE     ?= wine
WINFLAGS := $(OPT) -Wall -Wextra -I.
# static: no MinGW DLLs to find at run time; winpthread only for the tests that make threads
WINLIBS  := -static -lm -lpthread
WINENV   := WINEDEBUG=-all WINEDLLOVERRIDES="mscoree,mshtml=" LC_ALL=C.UTF-8
WINTESTS := $(patsubst tests/%.c,$(B)/win/tests/%,$(wildcard tests/test_*.c)) \
            $(B)/win/tests/test_cpp $(B)/win/tests/test_options_c11
WINEXAMPLES := $(patsubst examples/%.c,$(B)/win/%.exe,$(wildcard examples/*.c)) $(B)/win/cpp_chat.exe

.PHONY: test-windows
.PRECIOUS: $(B)/win/tests/%.exe
$(B)/win/llm.o: tests/llm_impl.c llm.h
	@mkdir -p $(dir $@)
	$(WINCC) $(WINFLAGS) -std=c99 -c $< -o $@
$(B)/win/tests/%.exe: tests/%.c $(B)/win/llm.o llm.h $(TEST_HDRS)
	@mkdir -p $(dir $@)
	$(WINCC) $(WINFLAGS) -std=c99 $< $(if $(filter $*,$(TEST_SELF)),,$(B)/win/llm.o) -o $@ $(WINLIBS)
$(B)/win/tests/test_options_c11.exe: tests/test_options.c llm.h tests/test.h
	@mkdir -p $(dir $@)
	$(WINCC) $(WINFLAGS) -std=c11 $< -o $@ $(WINLIBS)
$(B)/win/tests/test_cpp.exe: tests/test_cpp.cpp llm.h tests/test.h
	@mkdir -p $(dir $@)
	$(WINCXX) $(WINFLAGS) -std=c++11 $< -o $@ $(WINLIBS)
$(B)/win/%.exe: examples/%.c llm.h
	@mkdir -p $(dir $@)
	$(WINCC) $(WINFLAGS) -std=c99 $< -o $@ $(WINLIBS)
$(B)/win/cpp_chat.exe: examples/cpp_chat.cpp llm.h
	@mkdir -p $(dir $@)
	$(WINCXX) $(WINFLAGS) -std=c++11 $< -o $@ $(WINLIBS)
$(B)/win/tests/%: $(B)/win/tests/%.exe
	@printf '#!/usr/bin/env bash\n# %s under wine, its CRLF line ends made LF\n%s "$$0.exe" "$$@" 2>&1 | tr -d "\\r"\nexit $${PIPESTATUS[0]}\n' \
	  '$(notdir $<)' '$(WINE)' > $@ && chmod +x $@

test-windows: $(WINTESTS) $(WINEXAMPLES) $(B)/tests/test_platform $(B)/generate
	@$(WINENV) WINE="$(WINE)" LLM_FIXTURES=tests/fixtures LLM_FUZZ_DIR=tests/fuzz LLM_BUILD=$(B) tests/run.sh $(WINTESTS) tests/test_windows_bits.sh

# `make test-warnings`: the implementation compiled with -Wall -Wextra -Wpedantic -Werror by
# gcc, clang (also -Wvla -Wgnu: no VLAs or GNU-only syntax, which MSVC rejects) and MinGW-w64
# (its gcc, and clang with its headers), as C99, C11 and C++11, and with LLM_NO_THREADS and
# LLM_STATIC; its macOS lines with -D__APPLE__ (on glibc's headers: the syntax, not the SDK).
# Then as a compiler that is neither GNU nor clang sees it (clang with __GNUC__
# and __clang__ undefined: no builtins, no attributes, the scalar kernels, a pool that sleeps
# and counts under its mutex), where test_platform is also run.
WARN  := -Wall -Wextra -Wpedantic -Werror -I.
NOGNU := -U__GNUC__ -U__GNUC_MINOR__ -U__GNUC_PATCHLEVEL__ -U__clang__ -Wno-builtin-macro-redefined \
         -Wno-literal-range -Wno-unused-function
MINGW_INC   := /usr/x86_64-w64-mingw32/include
CLANG_MINGW := --target=x86_64-w64-windows-gnu -isystem $(MINGW_INC)
.PHONY: test-warnings
test-warnings:
	@mkdir -p $(B)/warn
	@printf '#define LLM_IMPLEMENTATION\n#include "llm.h"\nint main(void) { return llm_cpu_count() > 0 ? 0 : 1; }\n' > $(B)/warn/impl.c
	@set -e; n=0; for c in \
	    "$(CC) -std=c99" "$(CC) -std=c11" "$(CC) -std=c99 -DLLM_NO_THREADS" "$(CC) -std=c99 -DLLM_STATIC" \
	    "$(CXX) -x c++ -std=c++11" \
	    $(if $(CLANG),"$(CLANG) -std=c99 -Wvla -Wgnu" "$(CLANG) -std=c11 -Wvla -Wgnu -fms-extensions" \
	      "$(CLANG)++ -x c++ -std=c++11 -Wvla" "$(CLANG) -std=c11 -Wvla $(NOGNU)" \
	      "$(CLANG) -std=c99 -D__APPLE__" "$(CLANG)++ -x c++ -std=c++11 -D__APPLE__") \
	    $(if $(shell command -v $(WINCC)),"$(WINCC) -std=c99" "$(WINCC) -std=c11" "$(WINCC) -std=c99 -DLLM_NO_THREADS" \
	      "$(WINCXX) -x c++ -std=c++11") \
	    $(if $(and $(CLANG),$(wildcard $(MINGW_INC)/windows.h)),"$(CLANG) $(CLANG_MINGW) -std=c99" \
	      "$(CLANG) $(CLANG_MINGW) -std=c11" "$(CLANG)++ $(CLANG_MINGW) -x c++ -std=c++11"); do \
	  $${c%% *} $(WARN) $${c#* } -fsyntax-only $(B)/warn/impl.c || { echo "FAIL warnings: $$c"; exit 1; }; n=$$((n+1)); \
	done; echo "no warnings from $$n compilers and modes (-Wall -Wextra -Wpedantic -Werror)"
	@if [ -n "$(CLANG)" ]; then \
	  $(CLANG) $(OPT) -std=c11 -Wall -Wextra $(NOGNU) -I. tests/test_platform.c -o $(B)/warn/test_platform_nognu $(LDLIBS) && \
	  { out=$$($(B)/warn/test_platform_nognu 2>&1) || { printf '%s\n' "$$out"; exit 1; }; \
	    printf '%s\n' "$$out" | sed 's/^test_platform:/test_platform (no GNU extensions):/'; }; \
	else echo "SKIP test-warnings: no clang for the non-GNU build"; fi

# `make install PREFIX=/usr/local` (and DESTDIR= for staging): include/llm.h and
# include/llm_cuda.cu, lib/pkgconfig/llm.pc, lib/cmake/llm/ (find_package(llm)). The same
# files as `cmake --install`. `make uninstall` removes them.
PREFIX      ?= /usr/local
LLM_VERSION := $(shell sed -n 's/^\#define LLM_VERSION "\(.*\)"/\1/p' llm.h)
INSTALL_DIR  = $(DESTDIR)$(PREFIX)
.PHONY: install uninstall test-install
install:
	install -d $(INSTALL_DIR)/include $(INSTALL_DIR)/lib/pkgconfig $(INSTALL_DIR)/lib/cmake/llm
	install -m 644 llm.h llm_cuda.cu $(INSTALL_DIR)/include/
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@VERSION@|$(LLM_VERSION)|' cmake/llm.pc.in > $(INSTALL_DIR)/lib/pkgconfig/llm.pc
	install -m 644 cmake/llmConfig.cmake $(INSTALL_DIR)/lib/cmake/llm/
	sed -e 's|@VERSION@|$(LLM_VERSION)|' cmake/llmConfigVersion.cmake.in > $(INSTALL_DIR)/lib/cmake/llm/llmConfigVersion.cmake
uninstall:
	rm -f $(INSTALL_DIR)/include/llm.h $(INSTALL_DIR)/include/llm_cuda.cu $(INSTALL_DIR)/lib/pkgconfig/llm.pc \
	  $(INSTALL_DIR)/lib/cmake/llm/llmConfig.cmake $(INSTALL_DIR)/lib/cmake/llm/llmConfigVersion.cmake
	-rmdir $(INSTALL_DIR)/lib/cmake/llm

# C++: examples/cpp_chat.cpp (RAII over the C API), as C++11 and as C++20.
all: $(B)/cpp_chat
$(B)/cpp_chat: examples/cpp_chat.cpp llm.h
	@mkdir -p $(dir $@)
	$(CXX) $(OPT) -std=c++11 -Wall -Wextra -Wpedantic -pthread -I. $< -o $@ $(LDLIBS)
$(B)/cpp_chat20: examples/cpp_chat.cpp llm.h
	@mkdir -p $(dir $@)
	$(CXX) $(OPT) -std=c++20 -Wall -Wextra -Wpedantic -pthread -I. $< -o $@ $(LDLIBS)

# `make test-install`: tests/test_install.sh. examples/external, copied out of the tree, built
# against an installed llm.h with pkg-config and with CMake (find_package after `make install`
# or `cmake --install`, and add_subdirectory), each run; cpp_chat as C++11 and C++20 must
# reply as examples/chat does, byte for byte.
test-install: $(B)/cpp_chat $(B)/cpp_chat20 $(B)/chat
	@LLM_BUILD=$(B) CC="$(CC)" tests/run.sh tests/test_install.sh
