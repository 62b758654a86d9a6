// Sign-in (POST /api/v1/login): password and, for representatives and administrators, the
// authenticator's code (or a recovery code); a one-time password is changed on the way in.
import { api, setCsrf } from '/console/api.js';
import { h, fill, field } from '/console/ui.js';

export function signInPage(app, onSignedIn) {
  const user = field('User name', h('input', { name: 'user', autocomplete: 'username', required: true, maxlength: 64 }));
  const password = field('Password', h('input', { name: 'password', type: 'password', autocomplete: 'current-password', required: true }));
  const totp = field('Authenticator code',
    h('input', { name: 'totp', inputmode: 'numeric', autocomplete: 'one-time-code', maxlength: 32 }),
    'Representatives and administrators: the 6-digit code of your authenticator app, or one of your recovery codes (XXXX-XXXX-XXXX-X).');
  const newPassword = field('New password', h('input', { name: 'new_password', type: 'password', autocomplete: 'new-password' }),
    'Your password is a one-time password: choose your own, at least 12 characters.');
  newPassword.row.hidden = true;
  const formError = h('p.error#signin-error', { role: 'alert' });
  formError.hidden = true;
  const submit = h('button', { type: 'submit' }, 'Sign in');

  const form = h('form.card#signin', { novalidate: true },
    h('h1', 'Sign in'), user.row, password.row, totp.row, newPassword.row, formError, submit);

  const show = (msg) => {
    formError.textContent = msg;
    formError.hidden = !msg;
  };

  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    for (const f of [user, password, totp, newPassword]) f.error('');
    show('');
    if (!user.input.value) return user.error('Enter your user name.');
    if (!password.input.value) return password.error('Enter your password.');
    const body = { user: user.input.value.trim(), password: password.input.value };
    if (totp.input.value.trim()) body.totp = totp.input.value.trim();
    if (!newPassword.row.hidden) {
      if (newPassword.input.value.length < 12) return newPassword.error('At least 12 characters.');
      body.new_password = newPassword.input.value;
    }
    submit.disabled = true;
    try {
      const r = await api('POST', '/login', body);
      setCsrf(r.csrf_token);
      const me = await api('GET', '/me');
      onSignedIn(me);
    } catch (e) {
      switch (e.code) {
        case 'bad_credentials':
          show('Wrong user name or password.');
          break;
        case 'totp_required':
          totp.error('This account needs the code of its authenticator app.');
          totp.input.focus();
          break;
        case 'wrong_totp':
          totp.error('That code is wrong, expired or used already. Wait for the next code.');
          totp.input.focus();
          break;
        case 'totp_not_enrolled':
          show('This account has no authenticator enrolled. Ask an administrator to reset its TOTP.');
          break;
        case 'password_change_required':
          newPassword.row.hidden = false;
          newPassword.input.focus();
          show('Your password is a one-time password: choose a new one to sign in.');
          break;
        case 'weak_new_password':
          newPassword.error('Choose at least 12 characters, different from the one-time password.');
          break;
        case 'rate_limited': {
          const min = Math.ceil((Number(e.retryAfter) || 900) / 60);
          show(`Too many failed sign-ins: this account or address is locked out. Try again in ${min} minutes.`);
          break;
        }
        default:
          show(e.message);
      }
    } finally {
      submit.disabled = false;
    }
  });
  fill(app, form);
  user.input.focus();
  return null;
}
