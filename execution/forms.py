from django import forms

from execution.prompts import PromptFormField
from execution.repo_urls import validate_branch, validate_repo_url


class TaskForm(forms.Form):
    title = forms.CharField(max_length=200)
    repo_url = forms.CharField(label="Repository URL", max_length=2000)
    base_branch = forms.CharField(max_length=200, initial="main")
    prompt = PromptFormField()

    def clean_repo_url(self) -> str:
        return validate_repo_url(self.cleaned_data["repo_url"])

    def clean_base_branch(self) -> str:
        return validate_branch(self.cleaned_data["base_branch"])


class FollowUpForm(forms.Form):
    prompt = PromptFormField()
