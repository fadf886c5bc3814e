// The message line under the top bar: errors (with their class name in data-error, for tests and styling) and
// notes. DOM only; what to say comes from the caller.

import { byId } from './dom';
import { describeError, errorName } from './webgpu-help';

export class Notice {
  private readonly el = byId('message', HTMLElement);

  show(text: string, name: string): void {
    this.el.textContent = text;
    this.el.dataset.error = name;
    this.el.hidden = false;
  }

  showError(e: unknown): void {
    console.error(e);
    this.show(describeError(e), errorName(e));
  }

  clear(): void {
    this.el.textContent = '';
    delete this.el.dataset.error;
    this.el.hidden = true;
  }
}
