from django import forms


class PersonalAccessTokenForm(forms.Form):
    # max_length is generous on purpose: the length check with a helpful message is in normalize_token.
    token = forms.CharField(
        label="Personal access token",
        max_length=20_000,
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "off", "spellcheck": "false"}),
    )
