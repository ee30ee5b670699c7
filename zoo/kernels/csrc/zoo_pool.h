/* The kernels' parallel loop: zoo_pool_for(nth, n, grain, fn, ctx) runs fn(ctx, a, b) over [0, n) in chunks of
   `grain` on up to nth threads, the calling thread working as one of them.

   The threads are, in this order of preference:
   - torch's own OpenMP team, where Python found the OpenMP runtime torch uses and handed this file its
     GOMP_parallel (zoo_pool_use_openmp): the compiled convs then run on the same threads as torch's kernels
     around them, so no thread of ours competes with torch's spinning workers for the cores, and they scale
     as torch's kernels do.  Thread k of n takes the k-th contiguous run of chunks, as torch splits its
     ranges (the rows a core wrote in one op are mostly the rows it reads in the next);
   - else a persistent pool of pthreads, started on first use and reused by every later call: a worker spins
     briefly for the next loop, then sleeps on a futex (Linux; elsewhere it polls with short sleeps).  Its
     threads claim the next chunk from a shared counter (a thread the OS deschedules holds up no fixed
     share).  One caller uses the pool at a time; a second caller meanwhile (another Python thread) runs its
     loop on its own thread.  After fork() the child starts a fresh pool, and never enters OpenMP.

   Whatever the threads, each chunk is computed by one thread with the same arithmetic, so the results do not
   depend on the number of threads or on which thread ran what.  Header-only: include it in exactly one
   translation unit of a library (its dispatch file, compiled with the baseline flags). */

#ifndef ZOO_POOL_H
#define ZOO_POOL_H

#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <time.h>
#ifdef __linux__
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

typedef void (*zoo_range_fn)(const void *ctx, long a, long b);
typedef void (*zoo_gomp_parallel_fn)(void (*fn)(void *), void *data, unsigned num_threads, unsigned flags);
typedef int (*zoo_omp_int_fn)(void);

#define ZOO_POOL_MAX 64    /* threads per loop, the caller included */
#define ZOO_POOL_SPIN 4000 /* pause iterations a worker spins for the next loop before it sleeps */

static inline void zoo_pool_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

/* One loop's description.  The pool's copy is written by the caller holding the lock before it publishes a
   new generation; workers read it with relaxed loads and trust what they read only once their claim of a
   chunk of that generation succeeds (the fields cannot change while a chunk of it is unclaimed). */
typedef struct {
    zoo_range_fn fn;
    const void *ctx;
    long n, grain, chunks;
    int nth;
} zoo_loop;

static struct {
    pthread_mutex_t lock; /* held by the caller whose loop the workers serve */
    int workers;          /* started (only the lock holder starts them) */
    zoo_loop loop;
    uint64_t state; /* generation << 32 | next unclaimed chunk */
    long done;      /* chunks finished in this generation */
    uint32_t wake;  /* futex word, bumped at every publication */
    int sleepers;   /* workers asleep, or about to sleep, on `wake` */
    int forked;     /* in a child of fork(): no OpenMP */
} zoo_pool = {PTHREAD_MUTEX_INITIALIZER, 0, {0, 0, 0, 0, 0, 0}, 0, 0, 0, 0, 0};

static zoo_gomp_parallel_fn zoo_gomp_parallel = NULL;

static void zoo_pool_after_fork(void) {
    /* Only the forking thread exists in the child: forget the workers (and the lock a thread may have held). */
    pthread_mutex_t fresh = PTHREAD_MUTEX_INITIALIZER;
    zoo_pool.lock = fresh;
    zoo_pool.workers = 0;
    zoo_pool.sleepers = 0;
    zoo_pool.forked = 1;
}

__attribute__((constructor)) static void zoo_pool_init(void) { pthread_atfork(NULL, NULL, zoo_pool_after_fork); }

static void zoo_futex_wait(uint32_t *word, uint32_t seen) {
#ifdef __linux__
    syscall(SYS_futex, word, FUTEX_WAIT_PRIVATE, seen, NULL, NULL, 0);
#else
    (void)word, (void)seen;
    struct timespec ts = {0, 50000};
    nanosleep(&ts, NULL);
#endif
}

static void zoo_futex_wake_all(uint32_t *word) {
#ifdef __linux__
    syscall(SYS_futex, word, FUTEX_WAKE_PRIVATE, INT32_MAX, NULL, NULL, 0);
#else
    (void)word;
#endif
}

static inline uint32_t zoo_pool_gen(void) {
    return (uint32_t)(__atomic_load_n(&zoo_pool.state, __ATOMIC_ACQUIRE) >> 32);
}

/* Claim and run chunks of generation `gen` until none is left; returns how many this thread ran. */
static long zoo_pool_work(uint32_t gen) {
    long ran = 0;
    uint64_t s = __atomic_load_n(&zoo_pool.state, __ATOMIC_ACQUIRE);
    for (;;) {
        if ((uint32_t)(s >> 32) != gen) break;
        const long k = (long)(uint32_t)s;
        const zoo_range_fn fn = __atomic_load_n(&zoo_pool.loop.fn, __ATOMIC_RELAXED);
        const void *ctx = __atomic_load_n(&zoo_pool.loop.ctx, __ATOMIC_RELAXED);
        const long n = __atomic_load_n(&zoo_pool.loop.n, __ATOMIC_RELAXED);
        const long grain = __atomic_load_n(&zoo_pool.loop.grain, __ATOMIC_RELAXED);
        const long chunks = __atomic_load_n(&zoo_pool.loop.chunks, __ATOMIC_RELAXED);
        if (k >= chunks) break;
        /* acq_rel: the loads above stay before the claim; a successful claim proves they read this
           generation's loop (the caller rewrites it only after every chunk is claimed and done). */
        if (!__atomic_compare_exchange_n(&zoo_pool.state, &s, s + 1, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
            continue;
        const long a = k * grain, b = a + grain < n ? a + grain : n;
        fn(ctx, a, b);
        __atomic_add_fetch(&zoo_pool.done, 1, __ATOMIC_RELEASE);
        ++ran;
        s = __atomic_load_n(&zoo_pool.state, __ATOMIC_ACQUIRE);
    }
    return ran;
}

static void *zoo_pool_worker(void *arg) {
    const uintptr_t packed = (uintptr_t)arg;
    const int index = (int)(packed & 0xff);   /* worker 0 is the loop's second thread */
    uint32_t seen = (uint32_t)(packed >> 8); /* the generation when it was started */
    for (;;) {
        uint32_t gen = zoo_pool_gen();
        for (int i = 0; gen == seen && i < ZOO_POOL_SPIN; ++i) {
            zoo_pool_relax();
            gen = zoo_pool_gen();
        }
        while (gen == seen) {
            __atomic_add_fetch(&zoo_pool.sleepers, 1, __ATOMIC_SEQ_CST);
            const uint32_t w = __atomic_load_n(&zoo_pool.wake, __ATOMIC_SEQ_CST);
            if (zoo_pool_gen() == seen) zoo_futex_wait(&zoo_pool.wake, w);
            __atomic_sub_fetch(&zoo_pool.sleepers, 1, __ATOMIC_SEQ_CST);
            gen = zoo_pool_gen();
        }
        seen = gen;
        if (index + 1 < __atomic_load_n(&zoo_pool.loop.nth, __ATOMIC_RELAXED)) zoo_pool_work(gen);
    }
    return NULL;
}

/* Start workers until there are `want` (fewer if the system refuses threads); the caller holds the lock. */
static void zoo_pool_grow(int want) {
    if (want > ZOO_POOL_MAX - 1) want = ZOO_POOL_MAX - 1;
    if (zoo_pool.workers >= want) return;
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old); /* the workers never take a signal meant for Python */
    const uint32_t gen = (uint32_t)(zoo_pool.state >> 32);
    while (zoo_pool.workers < want) {
        pthread_t th;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        const uintptr_t arg = ((uintptr_t)gen << 8) | (uintptr_t)zoo_pool.workers;
        const int err = pthread_create(&th, &attr, zoo_pool_worker, (void *)arg);
        pthread_attr_destroy(&attr);
        if (err) break;
        ++zoo_pool.workers;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
}

typedef struct {
    zoo_range_fn fn;
    const void *ctx;
    long n, grain, chunks, next;
} zoo_omp_loop;

static zoo_omp_int_fn zoo_omp_thread_num = NULL, zoo_omp_num_threads = NULL;

/* On OpenMP's team: with the runtime's thread numbers, thread k of n takes the k-th contiguous run of chunks
   (as torch's own loops split their ranges, so a conv reads mostly the rows this core wrote in the op
   before it, and writes those the next op reads here); without them, chunks claimed one at a time. */
static void zoo_omp_body(void *arg) {
    zoo_omp_loop *l = (zoo_omp_loop *)arg;
    if (zoo_omp_thread_num && zoo_omp_num_threads) {
        const long k = zoo_omp_thread_num(), n = zoo_omp_num_threads();
        const long c0 = l->chunks * k / n, c1 = l->chunks * (k + 1) / n;
        const long a = c0 * l->grain, b = c1 * l->grain < l->n ? c1 * l->grain : l->n;
        if (a < b) l->fn(l->ctx, a, b);
        return;
    }
    for (long k; (k = __atomic_fetch_add(&l->next, 1, __ATOMIC_RELAXED)) < l->chunks;) {
        const long a = k * l->grain;
        l->fn(l->ctx, a, a + l->grain < l->n ? a + l->grain : l->n);
    }
}

static void zoo_pool_for(int nth, long n, long grain, zoo_range_fn fn, const void *ctx) {
    if (n <= 0) return;
    if (grain < 1) grain = 1;
    long chunks = (n + grain - 1) / grain;
    if (chunks > INT32_MAX) { /* the claim counter has 32 bits */
        grain = (n + INT32_MAX - 1) / INT32_MAX;
        chunks = (n + grain - 1) / grain;
    }
    if (nth > chunks) nth = (int)chunks;
    if (nth > ZOO_POOL_MAX) nth = ZOO_POOL_MAX;
    if (nth <= 1) { fn(ctx, 0, n); return; }
    zoo_gomp_parallel_fn gomp = __atomic_load_n(&zoo_gomp_parallel, __ATOMIC_ACQUIRE);
    if (gomp && !zoo_pool.forked) {
        zoo_omp_loop l = {fn, ctx, n, grain, chunks, 0};
        gomp(zoo_omp_body, &l, (unsigned)nth, 0);
        return;
    }
    if (pthread_mutex_trylock(&zoo_pool.lock)) { fn(ctx, 0, n); return; } /* another caller has the pool */
    zoo_pool_grow(nth - 1);
    if (zoo_pool.workers == 0) {
        pthread_mutex_unlock(&zoo_pool.lock);
        fn(ctx, 0, n);
        return;
    }
    __atomic_store_n(&zoo_pool.loop.fn, fn, __ATOMIC_RELAXED);
    __atomic_store_n(&zoo_pool.loop.ctx, ctx, __ATOMIC_RELAXED);
    __atomic_store_n(&zoo_pool.loop.n, n, __ATOMIC_RELAXED);
    __atomic_store_n(&zoo_pool.loop.grain, grain, __ATOMIC_RELAXED);
    __atomic_store_n(&zoo_pool.loop.chunks, chunks, __ATOMIC_RELAXED);
    __atomic_store_n(&zoo_pool.loop.nth, nth, __ATOMIC_RELAXED);
    __atomic_store_n(&zoo_pool.done, 0, __ATOMIC_RELAXED);
    const uint32_t gen = (uint32_t)(zoo_pool.state >> 32) + 1;
    __atomic_store_n(&zoo_pool.state, (uint64_t)gen << 32, __ATOMIC_SEQ_CST); /* publish */
    __atomic_add_fetch(&zoo_pool.wake, 1, __ATOMIC_SEQ_CST);
    if (__atomic_load_n(&zoo_pool.sleepers, __ATOMIC_SEQ_CST)) zoo_futex_wake_all(&zoo_pool.wake);
    zoo_pool_work(gen);
    /* Wait for the chunks other threads are still running (never for a thread that claimed nothing). */
    for (long i = 0; __atomic_load_n(&zoo_pool.done, __ATOMIC_ACQUIRE) < chunks; ++i) {
        if (i < ZOO_POOL_SPIN) zoo_pool_relax();
        else sched_yield();
    }
    pthread_mutex_unlock(&zoo_pool.lock);
}

/* Run later loops on the OpenMP runtime's team through `gomp_parallel` (NULL: on the pthread pool), split by
   the runtime's omp_get_thread_num / omp_get_num_threads (NULL: chunks claimed one at a time). */
static void zoo_pool_use_openmp(zoo_gomp_parallel_fn gomp_parallel, zoo_omp_int_fn thread_num,
                                zoo_omp_int_fn num_threads) {
    __atomic_store_n(&zoo_gomp_parallel, NULL, __ATOMIC_RELEASE);
    zoo_omp_thread_num = thread_num;
    zoo_omp_num_threads = num_threads;
    __atomic_store_n(&zoo_gomp_parallel, gomp_parallel, __ATOMIC_RELEASE);
}

/* 1 while loops run on OpenMP's team, 0 on the pthread pool; -1 in a forked child that had OpenMP (pool). */
static int zoo_pool_mode(void) {
    if (!__atomic_load_n(&zoo_gomp_parallel, __ATOMIC_ACQUIRE)) return 0;
    return zoo_pool.forked ? -1 : 1;
}

#endif
