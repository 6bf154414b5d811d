import { Dialog } from '@jupyterlab/apputils';
import { Widget } from '@lumino/widgets';

/** A dialog body that saves itself: true when it did, false to keep the dialog open
 * (it then shows what was wrong by the field). */
export interface ISubmittingBody<T> extends Widget, Dialog.IBodyWidget<T> {
  submit(): Promise<boolean>;
}

export interface IFormDialogOptions {
  title: string;
  /** The accept button: its label, and a class for tests and styles. */
  acceptLabel: string;
  acceptClass: string;
  /** A class for the whole dialog. */
  dialogClass: string;
  focusNodeSelector: string;
}

/**
 * A dialog whose accept button submits its form and closes only once that worked, so a
 * refused field is shown and corrected without losing what was typed.
 */
export class FormDialog<T> extends Dialog<T> {
  constructor(
    protected readonly form: ISubmittingBody<T>,
    options: IFormDialogOptions
  ) {
    const buttons = [
      Dialog.cancelButton(),
      Dialog.okButton({
        label: options.acceptLabel,
        className: options.acceptClass
      })
    ];
    super({
      title: options.title,
      body: form,
      buttons,
      defaultButton: buttons.length - 1,
      focusNodeSelector: options.focusNodeSelector
    });
    this._buttonList = buttons;
    this.addClass(options.dialogClass);
  }

  resolve(index?: number): void {
    const button = this._buttonList[index ?? this._buttonList.length - 1];
    if (!button || !button.accept || this._accepted) {
      super.resolve(index);
      return;
    }
    void this.form.submit().then(ok => {
      if (ok && !this.isDisposed) {
        this._accepted = true;
        super.resolve(index);
      }
    });
  }

  private _buttonList: ReadonlyArray<Dialog.IButton>;
  private _accepted = false;
}
