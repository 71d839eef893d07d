/** A promise with its settle functions, for an answer that arrives through a callback. */
export class Deferred<T> {
  readonly promise: Promise<T>;
  #resolve: (value: T) => void = () => undefined;
  #reject: (err: unknown) => void = () => undefined;

  constructor() {
    this.promise = new Promise<T>((resolve, reject) => {
      this.#resolve = resolve;
      this.#reject = reject;
    });
    this.promise.catch(() => undefined); // whoever awaits it sees the rejection; nobody may be waiting yet
  }

  /** Settles it (the first call wins; later ones do nothing). */
  resolve(value: T): void {
    this.#resolve(value);
  }

  reject(err: unknown): void {
    this.#reject(err);
  }
}
