/** Ask the kernel for a port that is free right now on `host` (default 127.0.0.1). */
export declare function freePort(host?: string): Promise<number>;
