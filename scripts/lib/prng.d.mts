/** mulberry32: a small seeded PRNG; numbers in [0, 1). */
export declare function prng(seed: number): () => number;
