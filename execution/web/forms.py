from django import forms
from django.core.exceptions import ValidationError

from execution.git.repo_urls import validate_branch, validate_repo_url
from execution.prompts import PromptFormField


class TaskForm(forms.Form):
    title = forms.CharField(max_length=200)
    repo_url = forms.CharField(label="Repository URL", max_length=2000)
    base_branch = forms.CharField(max_length=200, initial="main")
    prompt = PromptFormField()

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # A blank URL is stripped to nothing before validate_repo_url sees it: the same helpful message for it.
        try:
            validate_repo_url("")
        except ValidationError as exc:
            self.fields["repo_url"].error_messages["required"] = exc.messages[0]

    def clean_repo_url(self) -> str:
        return validate_repo_url(self.cleaned_data["repo_url"])

    def clean_base_branch(self) -> str:
        return validate_branch(self.cleaned_data["base_branch"])


class FollowUpForm(forms.Form):
    prompt = PromptFormField()
