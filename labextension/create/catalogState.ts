import { IImageCatalogView } from './configFields';
import { IImage, IImageCatalog } from './types';

/**
 * The image catalogue as a dialog shows it: tested versions, or every version once the
 * "Advanced" switch is on (`GET images?include_untested=true`), each read once per dialog.
 */
export class ImageCatalogState implements IImageCatalogView {
  constructor(options: ImageCatalogState.IOptions) {
    this._fetch = options.fetch;
    this._changed = options.changed;
    this._mark = options.mark;
  }

  /** Whether the user may mark versions tested: an admin (set once `GET team` answers). */
  get canMark(): boolean {
    return this._canMark && !!this._mark;
  }

  set canMark(value: boolean) {
    this._canMark = value;
    this._changed?.();
  }

  get markError(): string | null {
    return this._markError;
  }

  /** Mark a version tested, then read every catalogue answer again (they changed). */
  async markTested(image: string, tag: string): Promise<void> {
    if (!this._mark) {
      return;
    }
    try {
      await this._mark(image, tag);
      this._markError = null;
    } catch (error) {
      this._markError = error instanceof Error ? error.message : String(error);
      this._changed?.();
      return;
    }
    this._answers.clear();
    await this.load();
  }

  /** The images as the switch is, or the other answer while that one is read. */
  get images(): ReadonlyArray<IImage> | null {
    return (
      this._answers.get(this._advanced) ??
      this._answers.get(!this._advanced) ??
      null
    );
  }

  get advanced(): boolean {
    return this._advanced;
  }

  get loading(): boolean {
    return this._loading.has(this._advanced);
  }

  get error(): string | null {
    return this._error;
  }

  /** Read the catalogue as the switch is now (nothing when already read). */
  async load(): Promise<void> {
    const advanced = this._advanced;
    if (this._answers.has(advanced) || this._loading.has(advanced)) {
      return this._loading.get(advanced);
    }
    const done = this._read(advanced);
    this._loading.set(advanced, done);
    this._changed?.();
    return done;
  }

  /** Flip the "Advanced" switch, and read that catalogue if not read yet. */
  setAdvanced(advanced: boolean): void {
    if (advanced === this._advanced) {
      return;
    }
    this._advanced = advanced;
    this._changed?.();
    void this.load();
  }

  private async _read(advanced: boolean): Promise<void> {
    try {
      const catalog = await this._fetch(advanced);
      this._answers.set(advanced, catalog.images);
      this._error = catalog.load_error
        ? `the configured catalogue was not used (${catalog.load_error}); these are the built-in images`
        : null;
    } catch (error) {
      this._error = error instanceof Error ? error.message : String(error);
    } finally {
      this._loading.delete(advanced);
      this._changed?.();
    }
  }

  private _fetch: (includeUntested: boolean) => Promise<IImageCatalog>;
  private _mark?: (image: string, tag: string) => Promise<unknown>;
  private _canMark = false;
  private _markError: string | null = null;
  private _changed?: () => void;
  private _advanced = false;
  private _answers = new Map<boolean, IImage[]>();
  private _loading = new Map<boolean, Promise<void>>();
  private _error: string | null = null;
}

export namespace ImageCatalogState {
  export interface IOptions {
    /** Read the catalogue (`GET images`, with `include_untested`). */
    fetch: (includeUntested: boolean) => Promise<IImageCatalog>;
    /** Called whenever what it holds changes. */
    changed?: () => void;
    /** Mark a version tested (`POST images/tested`); for admins. */
    mark?: (image: string, tag: string) => Promise<unknown>;
  }
}
